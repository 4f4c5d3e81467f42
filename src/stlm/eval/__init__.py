"""Evaluation: bits-per-byte, minimal pairs and zero-shot tasks."""
