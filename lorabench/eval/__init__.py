"""Evaluation: batched generation, answer extraction, metrics."""
