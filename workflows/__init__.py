"""msica's plumbing: Nipype interfaces and workflows, BIDS I/O and the command line."""
