"""A small shop: prices and discount codes."""
