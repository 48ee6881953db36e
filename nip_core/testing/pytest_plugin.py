"""pytest plugin of nip-core: fixtures every nip test suite (core and plugins) gets."""
