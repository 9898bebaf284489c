#!/usr/bin/env bash
# System packages the test suite drives for real: a JACK server (MIDI port tests), FluidSynth and a GM SoundFont
# (accuracy bench tests), Chromium (browser demo tests, driven by Playwright; its own browser download is not used),
# HAProxy (the cluster tests put a real load balancer in front of several servers).
# Installs only what is missing; needs root or sudo (apt-get) on Debian/Ubuntu.
set -euo pipefail

need=()
command -v jackd >/dev/null 2>&1 || need+=(jackd2)   # MIDI port tests (tests/sinks)
command -v fluidsynth >/dev/null 2>&1 || need+=(fluidsynth)   # accuracy bench tests (tests/bench)
[ -f /usr/share/sounds/sf2/FluidR3_GM.sf2 ] || need+=(fluid-soundfont-gm)   # its General MIDI SoundFont
[ -x /usr/bin/chromium ] || need+=(chromium)   # browser demo tests (tests/web)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)   # cluster tests (tests/cluster)

if [ ${#need[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "missing system packages: ${need[*]} (install them with your package manager)" >&2
    exit 1
fi
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing system packages for the tests: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
