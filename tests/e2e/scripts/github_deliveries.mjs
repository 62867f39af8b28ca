// GitHub's published example deliveries (npm @octokit/webhooks-examples),
// signed as GitHub signs them by @octokit/webhooks-methods (code we did not
// write) with the secret in WEBHOOK_SECRET. Run from the directory holding
// their node_modules; the events to print are the arguments. Prints one JSON
// object a line: {"event", "index", "action", "body", "signature"}.
import { createRequire } from "node:module";
import { sign } from "@octokit/webhooks-methods";

const require = createRequire(process.cwd() + "/");
const index = require("@octokit/webhooks-examples/api.github.com/index.json");
const secret = process.env.WEBHOOK_SECRET;
const events = process.argv.slice(1);
for (const entry of index) {
  if (!events.includes(entry.name)) continue;
  for (const [i, example] of entry.examples.entries()) {
    const body = JSON.stringify(example);
    const signature = await sign(secret, body);
    console.log(
      JSON.stringify({ event: entry.name, index: i, action: example.action ?? null, body, signature }),
    );
  }
}
