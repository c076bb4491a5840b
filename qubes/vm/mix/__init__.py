"""Roles that several domain classes share, as mixins."""
