"""`nlc view --serve`: the page on http://127.0.0.1:PORT/ (localhost only), until Ctrl-C."""
from __future__ import annotations

import http.server
import threading


def make_server(page: str, port: int = 0, host: str = "127.0.0.1") -> http.server.ThreadingHTTPServer:
    """A server that answers GET / with the page (and 404 otherwise); port 0 picks a free one."""
    body = page.encode("utf-8")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's naming)
            if self.path.split("?")[0] not in ("/", "/index.html"):
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):  # quiet
            pass

    return http.server.ThreadingHTTPServer((host, port), Handler)


def serve(page: str, port: int = 8000, open_browser: bool = False) -> None:
    srv = make_server(page, port)
    url = f"http://127.0.0.1:{srv.server_address[1]}/"
    print(f"serving {url} (Ctrl-C to stop)", flush=True)
    if open_browser:
        import webbrowser
        threading.Timer(0.3, webbrowser.open, (url,)).start()
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
