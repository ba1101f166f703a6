//! [`AckEarly`]: a TCP stream that acknowledges at once what it reads during a TLS handshake.

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Reads after which [`AckEarly`] acknowledges at once: more than a TLS handshake takes.
const QUICK_ACK_READS: u8 = 16;

/// A TCP stream that sets `TCP_QUICKACK` after each of its first [`QUICK_ACK_READS`] reads.
///
/// In a TLS 1.3 handshake the client sends a small record (the compatibility
/// ChangeCipherSpec), then its Finished. A client without `TCP_NODELAY` holds the Finished
/// until the small record is acknowledged, and the server, which has nothing to answer that
/// record with, delays the acknowledgement by Linux's 40 ms. Measured with `lftp` on loopback:
/// one such 40 ms wait on each control and each data connection. After the handshake every
/// command gets a reply, which carries the acknowledgement. (The SFTP gateway does the same
/// for the SSH key exchange, in its `Cuttable`.)
pub(crate) struct AckEarly {
    inner: TcpStream,
    quick_acks_left: u8,
}

impl AckEarly {
    pub(crate) fn new(inner: TcpStream) -> Self {
        AckEarly {
            inner,
            quick_acks_left: QUICK_ACK_READS,
        }
    }
}

impl AsyncRead for AckEarly {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let read = Pin::new(&mut self.inner).poll_read(cx, buf);
        if self.quick_acks_left > 0
            && matches!(read, Poll::Ready(Ok(())))
            && buf.filled().len() > before
        {
            self.quick_acks_left -= 1;
            // Not a permanent setting: Linux goes back to delayed acknowledgements by itself.
            #[cfg(target_os = "linux")]
            let _ = self.inner.set_quickack(true);
        }
        read
    }
}

impl AsyncWrite for AckEarly {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::{TcpListener, TcpStream};

    use super::{AckEarly, QUICK_ACK_READS};

    /// Each of the first reads leaves the socket acknowledging at once, even where it had
    /// been switched to delayed acknowledgements; then the socket is left alone.
    #[tokio::test]
    async fn first_reads_switch_to_quick_acks() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, _) = listener.accept().await.unwrap();
        let mut server = AckEarly::new(server);
        let mut byte = [0u8; 1];
        for read in 0..QUICK_ACK_READS {
            server.inner.set_quickack(false).unwrap();
            assert!(!server.inner.quickack().unwrap());
            client.write_all(b"x").await.unwrap();
            server.read_exact(&mut byte).await.unwrap();
            assert!(server.inner.quickack().unwrap(), "read {read}");
        }
        // Then the kernel decides alone (whether it acknowledges at once is its business).
        assert_eq!(server.quick_acks_left, 0);
        client.write_all(b"x").await.unwrap();
        server.read_exact(&mut byte).await.unwrap();
        assert_eq!(server.quick_acks_left, 0);
    }
}
