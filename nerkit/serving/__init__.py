"""The parts of the HTTP service that need no web framework: the micro-batcher that tags concurrent requests
together (``batcher``), the ASGI middleware that bounds what a request may send and answers a cut request
(``asgi``), and uvicorn's HTTP protocol with a deadline for the request head (``connection``; imports uvicorn
when called). ``nerkit.serve`` builds the FastAPI app around them and runs it."""
