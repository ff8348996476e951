"""The web portal: the customer's pages on the bills API, and in-browser verification."""
