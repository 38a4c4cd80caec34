"""Network access shared by crawl and download: netguard (the private-network rule, checked on the address actually
connected), http (the one HTTP client: checked redirects, size and time limits), robots (robots.txt, cached), domains
(allow/block lists), deadline (a total time per request) and loopback (the test server)."""
