//! Dialling a WebSocket from one of several loopback source addresses.
//!
//! A real client population comes from many addresses; from one, per-address limits (the
//! gateway's `GATEWAY_MAX_PENDING_PER_IP`) and the ephemeral-port range (~28,000 ports per
//! source address and destination) would decide a reconnect storm's pace instead of the
//! gateway. Linux routes all of 127.0.0.0/8 to loopback, so endpoint `i` can bind
//! 127.0.x.y before connecting.

use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, http::Uri};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The loopback source address of endpoint `idx` when endpoints are spread over `spread`
/// addresses (127.0.0.1, 127.0.0.2, …, 250 per third octet); `None` to let the OS choose.
pub fn source(idx: usize, spread: u32) -> Option<Ipv4Addr> {
    if spread <= 1 {
        return None;
    }
    let k = idx % spread as usize;
    Some(Ipv4Addr::new(127, 0, (k / 250) as u8, (k % 250 + 1) as u8))
}

/// Connects to `url` (a `ws://127.0.0.1:port/…` address) from `from`, or from wherever the OS
/// picks.
pub async fn connect(
    url: &str,
    config: WebSocketConfig,
    from: Option<Ipv4Addr>,
) -> Result<Ws, tungstenite::Error> {
    let Some(from) = from else {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true).await?;
        return Ok(ws);
    };
    let uri: Uri = url.parse().map_err(tungstenite::Error::from)?;
    let to: SocketAddr =
        format!("{}:{}", uri.host().unwrap_or("127.0.0.1"), uri.port_u16().unwrap_or(80))
            .parse()
            .map_err(|_| tungstenite::Error::Url(tungstenite::error::UrlError::NoHostName))?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::from((from, 0)))?;
    let tcp = socket.connect(to).await?;
    tcp.set_nodelay(true)?;
    let (ws, _) =
        tokio_tungstenite::client_async_with_config(url, MaybeTlsStream::Plain(tcp), Some(config))
            .await?;
    Ok(ws)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_spread_over_loopback_addresses() {
        assert_eq!(source(7, 1), None);
        assert_eq!(source(0, 64), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(source(65, 64), Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(source(260, 1000), Some(Ipv4Addr::new(127, 0, 1, 11)));
    }
}
