//! An IOCP-style server core on the cport completion port.
