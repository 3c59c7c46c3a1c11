"""Patch points: each turns its transport's calls into engine calls."""
