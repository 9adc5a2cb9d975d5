//! The one way lookout reads the files an operator gives it: configuration, compose and env files.
//!
//! [`read_file`] reads a file only when it is a regular file of at most [`MAX_FILE_BYTES`]: a
//! compose file set to `/dev/zero`, a FIFO or a folder fails at once with a message saying what
//! the path is, instead of reading forever or filling memory. The file is opened without
//! blocking (a FIFO with no writer would otherwise hang the open), checked with `fstat` on the
//! open descriptor (no window between check and read), and read with the limit enforced again
//! in case it grows meanwhile.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The largest configuration, compose or env file lookout reads (8 MiB); real ones are a few
/// kilobytes.
pub const MAX_FILE_BYTES: u64 = 8 * 1024 * 1024;

/// The bytes of the regular file at `path`, at most `limit` of them. Errors are `io::Error`s
/// whose message says what is wrong: `not a regular file (a character device)`, `is 9000000
/// bytes, more than the 8388608 lookout reads`; the caller adds the path.
pub fn read_file(path: &Path, limit: u64) -> io::Result<Vec<u8>> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "not a regular file ({}); give the path of a file",
                kind(&meta)
            ),
        ));
    }
    if meta.len() > limit {
        return Err(too_large(meta.len(), limit));
    }
    read_capped(file, meta.len(), limit)
}

/// [`read_file`] as UTF-8 text.
pub fn read_text(path: &Path, limit: u64) -> io::Result<String> {
    String::from_utf8(read_file(path, limit)?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "not UTF-8 text"))
}

fn read_capped(file: File, expected: u64, limit: u64) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    let len = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    if len > limit {
        return Err(too_large(len, limit));
    }
    Ok(bytes)
}

fn too_large(len: u64, limit: u64) -> io::Error {
    io::Error::new(
        io::ErrorKind::FileTooLarge,
        format!("the file is {len} bytes, more than the {limit} lookout reads"),
    )
}

fn kind(meta: &std::fs::Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_dir() {
        "a folder"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a file"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_regular_files_only_and_only_up_to_the_limit() {
        let dir = tempfile::tempdir().unwrap();
        let small = dir.path().join("small.toml");
        std::fs::write(&small, "a = 1\n").unwrap();
        assert_eq!(read_text(&small, MAX_FILE_BYTES).unwrap(), "a = 1\n");
        assert_eq!(read_file(&small, 6).unwrap(), b"a = 1\n");

        let e = read_file(&small, 5).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::FileTooLarge);
        assert!(e.to_string().contains("6 bytes, more than the 5"), "{e}");

        let e = read_file(Path::new("/dev/zero"), MAX_FILE_BYTES).unwrap_err();
        assert!(e.to_string().contains("a character device"), "{e}");
        let e = read_file(dir.path(), MAX_FILE_BYTES).unwrap_err();
        assert!(e.to_string().contains("a folder"), "{e}");

        // A FIFO without a writer: refused at once, not waited on.
        let fifo = dir.path().join("fifo");
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        )
        .unwrap();
        let e = read_file(&fifo, MAX_FILE_BYTES).unwrap_err();
        assert!(e.to_string().contains("a FIFO"), "{e}");

        let e = read_file(&dir.path().join("missing"), MAX_FILE_BYTES).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        std::fs::write(&small, [0xff, 0xfe]).unwrap();
        assert!(
            read_text(&small, MAX_FILE_BYTES)
                .unwrap_err()
                .to_string()
                .contains("UTF-8")
        );
    }
}
