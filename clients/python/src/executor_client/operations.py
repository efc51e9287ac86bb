"""Which method of `Executor` and `AsyncExecutor` calls each operation of the API (by operationId).

A test checks that this covers every operationId of clients/openapi.json and that each method
exists on both classes. Iterators (`executions()`, `agents()`, …) and `run()` are built on these.
"""

from __future__ import annotations

OPERATIONS: dict[str, str] = {
    "getOpenApi": "openapi",
    "getDocs": "docs",
    "getHealth": "health",
    "getReadiness": "readiness",
    "getStatus": "status",
    "getMetrics": "metrics",
    "submitExecution": "submit",
    "submitExecutionBatch": "submit_batch",
    "listExecutions": "list_executions",
    "getExecution": "execution",
    "getExecutionLog": "logs",
    "getExecutionInput": "execution_input",
    "getExecutionStdout": "stdout",
    "getExecutionEgress": "egress",
    "cancelExecution": "cancel",
    "streamExecutionEvents": "events",
    "registerAgent": "register_agent",
    "listAgents": "list_agents",
    "getAgent": "agent",
    "uploadModule": "upload_module",
    "uploadVersionModule": "upload_version_module",
    "publishVersion": "publish_version",
    "listVersions": "list_versions",
    "getVersion": "version",
    "deprecateVersion": "deprecate_version",
    "withdrawVersion": "withdraw_version",
    "agentStats": "agent_stats",
    "grantEntitlement": "grant",
    "listEntitlements": "list_entitlements",
    "revokeEntitlement": "revoke_entitlement",
    "createToken": "create_token",
    "listTokens": "list_tokens",
    "revokeToken": "revoke_token",
    "getReceipt": "receipt",
    "attestReceipt": "attest_receipt",
    "getKeys": "keys",
    "getLogHead": "log_head",
    "getInclusionProof": "inclusion_proof",
    "getConsistencyProof": "consistency_proof",
    "verifyReceipt": "verify_receipt",
    "getWebhookEndpoint": "webhook_endpoint",
    "setWebhookEndpoint": "set_webhook_endpoint",
    "rotateWebhookSecret": "rotate_webhook_secret",
    "listExecutionWebhooks": "list_webhook_deliveries",
    "resendExecutionWebhook": "resend_webhook_delivery",
    "getConsole": "console",
    "getConsoleScript": "console_asset",
    "getConsoleVerifier": "console_asset",
    "getConsoleStyle": "console_asset",
    "listImages": "list_images",
    "buildImages": "build_images",
    "deleteImage": "delete_image",
    "putSecret": "put_secret",
    "listSecrets": "list_secrets",
    "deleteSecret": "delete_secret",
    "resealSecrets": "reseal_secrets",
}

# The console's assets: one operation each (each its own media type), one method for all.
CONSOLE_ASSETS: dict[str, str] = {
    "console.js": "getConsoleScript",
    "verify.js": "getConsoleVerifier",
    "console.css": "getConsoleStyle",
}

# The list operations and the iterator that follows their next_cursor.
ITERATORS: dict[str, str] = {
    "listExecutions": "executions",
    "listAgents": "agents",
    "listVersions": "versions",
    "listEntitlements": "entitlements",
    "listTokens": "tokens",
    "listExecutionWebhooks": "webhook_deliveries",
    "listImages": "images",
    "listSecrets": "secrets",
}
