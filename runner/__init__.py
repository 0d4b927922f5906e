"""Smol Instruments: a coding agent for local LLMs that only ever touches a throwaway sandbox."""

__version__ = "0.1.0"
