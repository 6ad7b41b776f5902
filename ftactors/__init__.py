"""ftactors."""
