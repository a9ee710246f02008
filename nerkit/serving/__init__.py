"""The parts of the HTTP service that need no web framework: the micro-batcher that tags concurrent requests
together (``batcher``) and the ASGI middleware that bounds what a request may send and how long it may take
(``asgi``). ``nerkit.serve`` builds the FastAPI app and runs uvicorn around them."""
