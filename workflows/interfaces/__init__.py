"""Thin Nipype interfaces, one ``pipeline`` call each."""
