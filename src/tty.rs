//! Our own terminal: whether stdin/stdout are terminals, raw mode while a task has a TTY,
//! and its size. Raw mode is restored when the guard drops and, for the second Ctrl-C that
//! exits at once, by `restore_now()`.

use std::io::IsTerminal;
use std::sync::Mutex;

/// The terminal settings saved before raw mode, for `restore_now()`.
static SAVED: Mutex<Option<libc::termios>> = Mutex::new(None);

/// How a task's or exec's standard streams are wired, decided from our own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioKind {
    /// Allocate a TTY in the container (our stdin and stdout are both terminals).
    pub tty: bool,
    /// Attach the container's stdin to ours.
    pub attach_stdin: bool,
}

impl StdioKind {
    /// The rules: a TTY only when stdin AND stdout are terminals; stdin is attached when it
    /// is a pipe, a file or /dev/null (EOF arrives at once), or in the TTY case; a terminal
    /// stdin with stdout redirected is not attached, so nothing waits for typing.
    pub fn detect() -> StdioKind {
        Self::decide(
            std::io::stdin().is_terminal(),
            std::io::stdout().is_terminal(),
        )
    }

    pub fn decide(stdin_tty: bool, stdout_tty: bool) -> StdioKind {
        match (stdin_tty, stdout_tty) {
            (true, true) => StdioKind {
                tty: true,
                attach_stdin: true,
            },
            (true, false) => StdioKind {
                tty: false,
                attach_stdin: false,
            },
            (false, _) => StdioKind {
                tty: false,
                attach_stdin: true,
            },
        }
    }
}

/// Raw mode on our stdin terminal while it lives.
pub struct RawMode {
    original: libc::termios,
}

impl RawMode {
    /// Switch stdin's terminal to raw mode; `None` when it is not a terminal or refuses.
    pub fn enable() -> Option<RawMode> {
        // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios that tcgetattr fills in.
        unsafe {
            let mut original: libc::termios = std::mem::zeroed();
            if libc::tcgetattr(libc::STDIN_FILENO, &mut original) != 0 {
                return None;
            }
            let mut raw = original;
            libc::cfmakeraw(&mut raw);
            if libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &raw) != 0 {
                return None;
            }
            if let Ok(mut saved) = SAVED.lock() {
                *saved = Some(original);
            }
            Some(RawMode { original })
        }
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        // SAFETY: restores the settings read in `enable`.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.original);
        }
        if let Ok(mut saved) = SAVED.lock() {
            *saved = None;
        }
    }
}

/// Restore the terminal if raw mode is on (before exiting without unwinding).
pub fn restore_now() {
    if let Ok(saved) = SAVED.try_lock() {
        if let Some(original) = saved.as_ref() {
            // SAFETY: restores settings read by tcgetattr.
            unsafe {
                libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, original);
            }
        }
    }
}

/// Rows and columns of our stdout terminal.
pub fn size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut size) == 0 && size.ws_row > 0 {
            Some((size.ws_row, size.ws_col))
        } else {
            None
        }
    }
}

/// Rows and columns of the terminal on stderr, where progress is drawn.
pub fn stderr_size() -> Option<(u16, u16)> {
    // SAFETY: TIOCGWINSZ fills a winsize struct.
    unsafe {
        let mut size: libc::winsize = std::mem::zeroed();
        if libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut size) == 0
            && size.ws_row > 0
            && size.ws_col > 0
        {
            Some((size.ws_row, size.ws_col))
        } else {
            None
        }
    }
}

/// True when our stdin carries input someone gave us on purpose: a pipe, a socket or a
/// redirected file (`cat x | stackctl …`, `< x`). A terminal, `/dev/null` or a closed stdin
/// is not.
pub fn stdin_has_input() -> bool {
    // SAFETY: fstat on fd 0 fills a zeroed stat struct; a failure means no usable stdin.
    unsafe {
        let mut stat: libc::stat = std::mem::zeroed();
        if libc::fstat(libc::STDIN_FILENO, &mut stat) != 0 {
            return false;
        }
        matches!(
            stat.st_mode & libc::S_IFMT,
            libc::S_IFIFO | libc::S_IFREG | libc::S_IFSOCK
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tty_only_when_both_ends_are_terminals() {
        assert_eq!(
            StdioKind::decide(true, true),
            StdioKind {
                tty: true,
                attach_stdin: true
            }
        );
    }

    #[test]
    fn terminal_stdin_with_redirected_stdout_is_not_attached() {
        assert_eq!(
            StdioKind::decide(true, false),
            StdioKind {
                tty: false,
                attach_stdin: false
            }
        );
    }

    #[test]
    fn piped_stdin_is_attached_without_tty() {
        for stdout_tty in [true, false] {
            assert_eq!(
                StdioKind::decide(false, stdout_tty),
                StdioKind {
                    tty: false,
                    attach_stdin: true
                }
            );
        }
    }
}
