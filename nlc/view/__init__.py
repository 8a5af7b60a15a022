"""`nlc view`: an interactive level-graph explorer, one self-contained HTML page.

    data.build(source, overrides, model, run_dir) -> dict    the page's data (JSON-able)
    page.render(data) -> str                                 the HTML page, scripts and styles inlined
    page.write(data, path) / serve.serve(html, port)         to a file, or on localhost
"""
