"""The Redis token budget and token buckets. Imports nothing else of tokenbatch."""
