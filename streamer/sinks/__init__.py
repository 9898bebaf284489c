"""Where committed note events go besides the WebSocket: MIDI ports and MIDI files."""
