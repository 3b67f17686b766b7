//! Reading files a user names: regular files only, and bounded. Anything
//! else is refused before it is read: a FIFO would block the open or the
//! read until a writer came, `/dev/zero` would never end.

use std::path::Path;

/// Opens a regular file of at most `max` bytes. The open does not block (a
/// FIFO opens at once without waiting for a writer); what was opened is then
/// checked, so a file swapped in between cannot pass.
pub fn open_regular(path: &Path, max: u64) -> Result<(std::fs::File, u64), String> {
    use std::os::unix::fs::OpenOptionsExt;
    let at = |e: std::io::Error| format!("{}: {e}", path.display());
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(at)?;
    let meta = file.metadata().map_err(at)?;
    if !meta.is_file() {
        return Err(format!(
            "{}: not a regular file (a {})",
            path.display(),
            kind(&meta.file_type())
        ));
    }
    if meta.len() > max {
        return Err(format!(
            "{}: {} bytes, more than the {max} taken",
            path.display(),
            meta.len()
        ));
    }
    Ok((file, meta.len()))
}

/// A regular file's bytes: at most `max` (it may grow while it is read).
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let (file, len) = open_regular(path, max)?;
    let mut bytes = Vec::with_capacity(len as usize);
    file.take(max)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(bytes)
}

/// A regular file's text, UTF-8, at most `max` bytes.
pub fn read_text(path: &Path, max: u64) -> Result<String, String> {
    let bytes = read_regular(path, max)?;
    String::from_utf8(bytes).map_err(|e| format!("{}: not UTF-8 text: {e}", path.display()))
}

/// The text of `path`, or of standard input for `-` (named `<stdin>`),
/// UTF-8, at most `max` bytes: a regular file as [`read_text`] takes it;
/// standard input read through a bound, so that a pipe that never ends
/// (`< /dev/zero`) is refused once past it.
pub fn read_input(path: &Path, max: u64) -> Result<(String, String), String> {
    use std::io::Read;
    if path.as_os_str() != "-" {
        return Ok((path.display().to_string(), read_text(path, max)?));
    }
    let name = "<stdin>".to_string();
    let mut bytes = Vec::new();
    std::io::stdin()
        .lock()
        .take(max + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{name}: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("{name}: more than the {max} bytes taken"));
    }
    let text = String::from_utf8(bytes).map_err(|e| format!("{name}: not UTF-8 text: {e}"))?;
    Ok((name, text))
}

fn kind(kind: &std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if kind.is_dir() {
        "directory"
    } else if kind.is_fifo() {
        "FIFO"
    } else if kind.is_char_device() {
        "character device"
    } else if kind.is_block_device() {
        "block device"
    } else if kind.is_socket() {
        "socket"
    } else {
        "special file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_regular_files_are_read() {
        let error = read_regular(Path::new("/dev/zero"), 10).unwrap_err();
        assert_eq!(error, "/dev/zero: not a regular file (a character device)");
        let error = read_regular(&std::env::temp_dir(), 10).unwrap_err();
        assert!(
            error.ends_with("not a regular file (a directory)"),
            "{error}"
        );
        let fifo = std::env::temp_dir().join(format!("lameduck-fifo-{}", std::process::id()));
        let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; makes a FIFO in a scratch place.
        assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
        let error = read_regular(&fifo, 10).unwrap_err();
        let _ = std::fs::remove_file(&fifo);
        assert!(error.ends_with("not a regular file (a FIFO)"), "{error}");
    }

    #[test]
    fn a_file_over_the_bound_is_refused() {
        let path = std::env::temp_dir().join(format!("lameduck-big-{}", std::process::id()));
        std::fs::write(&path, [0u8; 11]).unwrap();
        let error = read_regular(&path, 10).unwrap_err();
        let _ = std::fs::remove_file(&path);
        assert!(
            error.ends_with("11 bytes, more than the 10 taken"),
            "{error}"
        );
    }
}
