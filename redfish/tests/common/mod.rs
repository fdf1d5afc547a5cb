//! Helpers of the Redfish client tests: clients with short retries, and tiny in-test
//! HTTP servers (axum on 127.0.0.1:0) for behaviours sushy-emulator cannot show.

#![allow(dead_code)]

use std::time::Duration;

use ferrite_redfish::{Client, ClientConfig, RetryPolicy};

/// Short retry delays so failure tests stay fast.
pub fn quick_retry(attempts: u32) -> RetryPolicy {
    RetryPolicy {
        attempts,
        first_delay: Duration::from_millis(20),
        max_delay: Duration::from_millis(100),
    }
}

pub fn client(url: &str, user: &str, password: &str) -> Client {
    let mut cfg = ClientConfig::new(url.parse().unwrap(), user, password);
    cfg.retry = quick_retry(3);
    cfg.connect_timeout = Duration::from_secs(2);
    cfg.timeout = Duration::from_secs(20);
    Client::new(cfg).unwrap()
}

/// Serves `app` on a free loopback port; the server lives as long as the test runtime.
pub async fn serve(app: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    format!("http://{addr}")
}
