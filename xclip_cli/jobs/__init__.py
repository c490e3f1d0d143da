"""What the tool does with videos: classify, scan, timeline, index and search, eval, tagging."""
