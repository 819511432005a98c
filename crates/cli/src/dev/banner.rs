//! What a person needs once the marketplace is up: where the gateway is, the
//! key, the accounts, and a curl line and a Python snippet that work as printed.

use zg_core::SigningKey;
use zg_devnet::Stack;

pub(super) fn print(stack: &Stack, data_dir: &std::path::Path) {
    let user = SigningKey::from_bytes(&stack.user_key)
        .map(|k| k.address())
        .unwrap_or_default();
    println!();
    println!("zg-serving dev: a local marketplace is running");
    println!();
    println!("  gateway    {}", stack.gateway_url);
    println!("  api key    {}", stack.api_key);
    println!(
        "  user page  {}  (admin token {})",
        stack.user_page_url,
        stack.gateway.admin_token()
    );
    println!(
        "  chain      {} (chain id {})",
        stack.chain.url(),
        stack.chain.chain_id()
    );
    println!("  contract   {}", stack.owner.contract_address());
    println!("  engine     {}", stack.engine.base_url());
    println!(
        "  user       {user}  (key 0x{})",
        hex::encode(stack.user_key)
    );
    for (i, p) in stack.providers.iter().enumerate() {
        println!(
            "  provider {i} {}  at {}  (config {})",
            p.address,
            p.running.url(),
            p.config_path.display()
        );
        if let (Some(url), Some(token)) = (p.running.admin_url(), p.running.admin_token()) {
            println!("  provider page {i}  {url}  (admin token {token})");
        }
    }
    println!("  data dir   {}", data_dir.display());
    println!();
    println!("Try it:");
    println!();
    println!(
        "  curl -s {}/chat/completions -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' \\\n    -d '{{\"model\": \"{}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Say hello\"}}], \"max_tokens\": 32}}'",
        stack.gateway_url, stack.api_key, stack.chat_model
    );
    println!();
    println!("  python3 - <<'PY'");
    println!("  from openai import OpenAI");
    println!(
        "  client = OpenAI(base_url=\"{}\", api_key=\"{}\")",
        stack.gateway_url, stack.api_key
    );
    println!(
        "  answer = client.chat.completions.create(model=\"{}\",",
        stack.chat_model
    );
    println!("      messages=[{{\"role\": \"user\", \"content\": \"Say hello\"}}], max_tokens=32)");
    println!("  print(answer.choices[0].message.content)");
    println!("  PY");
    println!();
    println!("The CLI, as this user and as provider 0:");
    println!();
    println!(
        "  export ZG_RPC_URL={} ZG_CONTRACT={} ZG_PRIVATE_KEY=0x{} ZG_BOOK={}",
        stack.chain.url(),
        stack.owner.contract_address(),
        hex::encode(stack.user_key),
        data_dir.join("user-book.sqlite").display()
    );
    println!("  zg-serving user services");
    println!("  zg-serving user ledger");
    println!("  zg-serving user receipts");
    if let Some(p) = stack.providers.first() {
        println!(
            "  zg-serving provider status --config {}",
            p.config_path.display()
        );
        println!(
            "  zg-serving provider settle --config {}",
            p.config_path.display()
        );
    }
    println!();
    println!("Ctrl-C stops everything; the same --data-dir continues where it stopped.");
}
