"""Network safety shared by crawl and download (private-address guard, URL checks), and the loopback test server."""
