"""One module per channel kind; each turns an alert into that kind's message and sends it."""
