"""MNIST sanity suite: the seed documents' experiments re-run beside ours."""
