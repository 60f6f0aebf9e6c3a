//! The worker's protocol stream: stdout is taken for frames and fd 1 is pointed at stderr.

use std::io::{self, BufWriter};

/// Where frames are written in a real worker.
#[cfg(unix)]
pub(crate) type ProtocolWriter = BufWriter<std::fs::File>;
/// Where frames are written in a real worker.
#[cfg(not(unix))]
pub(crate) type ProtocolWriter = BufWriter<io::Stdout>;

#[cfg(unix)]
mod sys {
    use std::os::raw::c_int;

    extern "C" {
        pub fn dup2(oldfd: c_int, newfd: c_int) -> c_int;
    }
}

/// Takes the process's stdout for the protocol and sends fd 1 to stderr from now on.
///
/// The protocol keeps a close-on-exec duplicate of the original stdout, so programs the
/// handler starts cannot write into the frames either; afterwards `println!` (and anything
/// else writing to fd 1) goes to stderr.
#[cfg(unix)]
pub(crate) fn protocol_writer() -> io::Result<ProtocolWriter> {
    use std::io::Write;
    use std::os::fd::AsFd;

    io::stdout().flush()?;
    let protocol = io::stdout().as_fd().try_clone_to_owned()?;
    // SAFETY: dup2 on two descriptors this process owns; fd 2 stays open, fd 1 is replaced
    // atomically and `protocol` keeps the original stdout alive.
    if unsafe { sys::dup2(2, 1) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(BufWriter::new(std::fs::File::from(protocol)))
}

/// Without unix descriptors stdout is used as it is: handler output must not go to stdout.
#[cfg(not(unix))]
pub(crate) fn protocol_writer() -> io::Result<ProtocolWriter> {
    Ok(BufWriter::new(io::stdout()))
}
