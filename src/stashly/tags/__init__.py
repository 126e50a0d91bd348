"""Tags: names an entry is filed under, so one call can invalidate every entry of a tag. Pure, low layer."""
