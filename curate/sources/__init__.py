"""Where pairs come from: crawled HTML, WARC/WAT archives, same-host http crawls and URL lists -> RUN/pairs/."""
