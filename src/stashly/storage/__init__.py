"""The stored byte format: the JSON envelope, signed pickle, and what stored bytes are when inspected."""
