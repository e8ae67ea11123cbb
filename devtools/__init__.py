"""Local development and test tooling (emulators, fakes); never deployed."""
