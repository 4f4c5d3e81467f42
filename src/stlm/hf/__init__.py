"""Hugging Face transformers interoperability (export and parity)."""
