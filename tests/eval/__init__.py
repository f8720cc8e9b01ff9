"""Tests of the evaluation harness (ropeshift.eval and its CLI commands)."""
