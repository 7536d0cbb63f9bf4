# Rivulet on any Kubernetes cluster (from a kubeconfig) with a Redis you already run.

provider "kubernetes" {
  config_path    = pathexpand(var.kubeconfig_path)
  config_context = var.kube_context != "" ? var.kube_context : null
}

provider "helm" {
  kubernetes = {
    config_path    = pathexpand(var.kubeconfig_path)
    config_context = var.kube_context != "" ? var.kube_context : null
  }
}

module "rivulet" {
  source = "../../modules/rivulet"

  namespace = var.namespace
  image_tag = var.image_tag

  redis_url         = var.redis_url
  api_keys          = var.api_keys
  openai_api_key    = var.openai_api_key
  anthropic_api_key = var.anthropic_api_key
  default_provider  = var.default_provider

  ingress_enabled       = var.ingress_host != ""
  ingress_hosts         = var.ingress_host != "" ? [var.ingress_host] : []
  install_ingress_nginx = var.install_ingress_nginx
}
