"""CascaDB: SQL over an ordered key-value store (the secure KVS), as the SecureCloud paper's."""
