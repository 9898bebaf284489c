"""Packaging beyond what pyproject.toml can say: the defaults in configs/ and the browser demo in clients/web/ ship
inside the package (as `streamer.configs` and `streamer.web`), so a wheel installed without a checkout serves the
demo page and reads its defaults. Everything else is in pyproject.toml."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["streamer", "streamer.*"]), "streamer.configs", "streamer.web"],
    package_dir={"streamer.configs": "configs", "streamer.web": "clients/web"},
    package_data={"streamer": ["py.typed"], "streamer.configs": ["*.toml"], "streamer.web": ["*.html", "*.js", "*.css"]},
)
