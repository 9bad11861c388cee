//! The TCP transport, as spead2 does it: one connection, SPEAD packets
//! written back to back (each carries its own length), a batch of packets
//! per write.

use std::io::Write;
use std::net::{SocketAddr, TcpStream};

use socket2::{Domain, Protocol, Socket, Type};

use super::{Limits, PacketSource, Transport, TransportError};

const MAX_BATCH: usize = 64;

/// Sends packets over one TCP connection.
#[derive(Debug)]
pub struct TcpTransport {
    stream: TcpStream,
    peer: String,
    buffer: Vec<u8>,
    limits: Limits,
}

impl TcpTransport {
    /// spead2's default TCP send buffer, in bytes.
    pub const DEFAULT_BUFFER_SIZE: usize = 212_992;

    /// Connects to `destination`, from `bind` if given, with a send buffer
    /// of `buffer_size` bytes.
    pub fn connect(
        destination: SocketAddr,
        bind: Option<SocketAddr>,
        buffer_size: usize,
    ) -> Result<Self, TransportError> {
        let socket = Socket::new(
            Domain::for_address(destination),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .map_err(TransportError::doing("creating a TCP socket"))?;
        socket
            .set_send_buffer_size(buffer_size)
            .map_err(TransportError::doing(format!(
                "setting the send buffer to {buffer_size} bytes"
            )))?;
        if let Some(bind) = bind {
            socket
                .bind(&bind.into())
                .map_err(TransportError::doing(format!("binding to {bind}")))?;
        }
        socket
            .connect(&destination.into())
            .map_err(TransportError::doing(format!("connecting to {destination}")))?;
        Ok(Self::from_stream(socket.into()))
    }

    /// Sends over a connection the caller made (for options this crate
    /// does not set).
    pub fn from_stream(stream: TcpStream) -> Self {
        let peer = stream
            .peer_addr()
            .map_or_else(|_| "the TCP peer".into(), |p| p.to_string());
        TcpTransport {
            stream,
            peer,
            buffer: Vec::new(),
            limits: Limits {
                max_len: 0,
                substreams: 1,
            },
        }
    }
}

impl Transport for TcpTransport {
    fn substreams(&self) -> usize {
        1
    }

    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    fn prepare(&mut self, max_packet_size: usize) -> Result<(), TransportError> {
        self.limits.max_len = max_packet_size;
        self.buffer = vec![0; MAX_BATCH * max_packet_size];
        Ok(())
    }

    fn send(&mut self, source: &mut dyn PacketSource<'_>) -> Result<usize, TransportError> {
        let (buffer, mut used) = (&mut self.buffer, 0);
        let packets = self.limits.fill(source, MAX_BATCH, |source, spec| {
            source.write(&mut buffer[used..used + spec.len]);
            used += spec.len;
            Ok(true)
        })?;
        if packets == 0 {
            return Ok(0);
        }
        self.stream
            .write_all(&self.buffer[..used])
            .map_err(TransportError::doing(format!(
                "writing {packets} packets ({used} bytes) to {}",
                self.peer
            )))?;
        Ok(packets)
    }
}
