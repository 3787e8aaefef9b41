//! `tasklog-server`: a tasklog store as an HTTP service.
