use alloy::primitives::Address;
use zg_chain::{ChainClient, ChainError};
use zg_devnet::DevChain;

#[tokio::test]
async fn dev_chains_run_side_by_side_and_stop_when_dropped() {
    let (a, b) = tokio::join!(DevChain::start(), DevChain::start());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.url(), b.url());
    assert_eq!(a.keys().len(), 10);
    let deployed = ChainClient::deploy(a.url(), &a.keys()[0], Default::default())
        .await
        .unwrap();
    let url = a.url().to_string();
    drop(a);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let err = deployed.lock_period().await.expect_err("anvil is gone");
    assert!(matches!(err, ChainError::Rpc { .. }), "{err}");
    // The other chain is untouched.
    assert!(
        ChainClient::connect(b.url(), Address::repeat_byte(1), &b.keys()[0])
            .await
            .is_err()
    );
    assert!(url.starts_with("http://127.0.0.1:"));
}

#[tokio::test]
async fn connecting_to_an_address_without_code_says_so() {
    let chain = DevChain::start().await.unwrap();
    let err = ChainClient::connect(chain.url(), Address::repeat_byte(7), &chain.keys()[0])
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            ChainError::NoContract {
                chain_id: 31337,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("deploy"), "{err}");
    let deployed = ChainClient::deploy(chain.url(), &chain.keys()[0], Default::default())
        .await
        .unwrap();
    let connected =
        ChainClient::connect(chain.url(), deployed.contract_address(), &chain.keys()[1])
            .await
            .unwrap();
    assert_eq!(connected.owner().await.unwrap(), deployed.wallet());
}
