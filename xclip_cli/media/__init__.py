"""Media without torch: probing, decoding and sampling frames, finding video files.

Nothing in this sub-package imports torch or transformers (a test checks it in a fresh
interpreter), so tools that only read videos stay light and start fast.
"""
