//! Shared by the end-to-end tests in `all/`; nothing here.
