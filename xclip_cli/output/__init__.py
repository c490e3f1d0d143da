"""Writers: records, timelines and cues, search hits, eval reports, the HTML report, plots."""
