output "namespace" {
  description = "Namespace Rivulet runs in."
  value       = module.rivulet.namespace
}

output "release_name" {
  description = "Helm release name."
  value       = module.rivulet.release_name
}

output "auth_secret_name" {
  description = "Secret with `api-keys` and `read-token-secret` (edit `api-keys` to rotate keys)."
  value       = module.rivulet.auth_secret_name
}

output "generated_api_key" {
  description = "The API key generated when api_keys was empty: `terraform output -raw generated_api_key`."
  value       = module.rivulet.generated_api_key
  sensitive   = true
}
