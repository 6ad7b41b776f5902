"""Stand-in for a third-party package: code that knows nothing about ftactors."""
