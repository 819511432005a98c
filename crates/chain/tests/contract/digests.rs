use crate::common::{World, voucher_for};
use alloy::primitives::{B256, U256};
use zg_chain::{ChainClient, DeployParams};
use zg_core::{Domain, Receipt, service_id};
use zg_devnet::{DevChain, DevChainOptions};

#[tokio::test]
async fn rust_digests_equal_the_contracts_own() {
    let w = World::new().await;
    let domain = w.user.domain();
    assert_eq!(domain, Domain::new(31337, w.user.contract_address()));
    assert_eq!(w.user.domain_separator().await.unwrap(), domain.separator());

    for cumulative in [U256::ZERO, U256::from(1u64), U256::MAX] {
        let v = voucher_for(w.user.wallet(), w.provider.wallet(), cumulative);
        assert_eq!(
            w.user.voucher_digest(&v).await.unwrap(),
            v.signing_hash(&domain)
        );
    }

    let receipt = Receipt {
        user: w.user.wallet(),
        provider: w.provider.wallet(),
        service: service_id("chat"),
        model_digest: B256::repeat_byte(1),
        request_digest: B256::repeat_byte(2),
        response_digest: B256::repeat_byte(3),
        input_tokens: U256::from(11u64),
        output_tokens: U256::from(22u64),
        input_price: U256::from(33u64),
        output_price: U256::from(44u64),
        cached_tokens: U256::from(5u64),
        cached_price: U256::from(3u64),
        fee: U256::from(6u64 * 33 + 5 * 3 + 22 * 44),
        owed: U256::MAX,
        proof_digest: B256::repeat_byte(4),
        issued_at: 1_700_000_000,
    };
    assert_eq!(
        w.user.receipt_digest(&receipt).await.unwrap(),
        receipt.signing_hash(&domain)
    );
}

#[tokio::test]
async fn the_domain_carries_the_chain_id() {
    let chain = DevChain::start_with(DevChainOptions {
        chain_id: 4242,
        accounts: 1,
        ..Default::default()
    })
    .await
    .unwrap();
    let client = ChainClient::deploy(chain.url(), &chain.keys()[0], DeployParams::default())
        .await
        .unwrap();
    assert_eq!(client.chain_id(), 4242);
    assert_eq!(
        client.domain_separator().await.unwrap(),
        Domain::new(4242, client.contract_address()).separator()
    );
}
