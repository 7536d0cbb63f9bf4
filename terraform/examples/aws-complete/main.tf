# Rivulet on an existing EKS cluster with a managed Redis made for it:
# redis-aws (MemoryDB or ElastiCache) -> its rediss:// URL -> the rivulet module.

provider "aws" {
  region = var.region
}

data "aws_eks_cluster" "this" {
  name = var.eks_cluster_name
}

# A short-lived token (15 minutes) for the Kubernetes API, read when the plan is made. Creating
# MemoryDB takes longer than that, so the first apply goes in two steps (see README.md).
data "aws_eks_cluster_auth" "this" {
  name = var.eks_cluster_name
}

provider "kubernetes" {
  host                   = data.aws_eks_cluster.this.endpoint
  cluster_ca_certificate = base64decode(data.aws_eks_cluster.this.certificate_authority[0].data)
  token                  = data.aws_eks_cluster_auth.this.token
}

provider "helm" {
  kubernetes = {
    host                   = data.aws_eks_cluster.this.endpoint
    cluster_ca_certificate = base64decode(data.aws_eks_cluster.this.certificate_authority[0].data)
    token                  = data.aws_eks_cluster_auth.this.token
  }
}

locals {
  vpc_config = data.aws_eks_cluster.this.vpc_config[0]
}

module "redis" {
  source = "../../modules/redis-aws"

  name        = var.name
  engine_kind = var.redis_engine_kind
  vpc_id      = local.vpc_config.vpc_id
  subnet_ids  = length(var.subnet_ids) > 0 ? var.subnet_ids : tolist(local.vpc_config.subnet_ids)

  # EKS attaches the cluster security group to managed node groups (and so to pods that use
  # the node's network): admitting it lets Rivulet's pods reach Redis and nothing else in.
  allowed_security_group_ids = [local.vpc_config.cluster_security_group_id]

  tags = var.tags
}

module "rivulet" {
  source = "../../modules/rivulet"

  release_name = var.name
  namespace    = var.namespace
  image_tag    = var.image_tag

  redis_url         = module.redis.redis_url
  api_keys          = var.api_keys
  openai_api_key    = var.openai_api_key
  anthropic_api_key = var.anthropic_api_key

  ingress_enabled         = var.ingress_host != ""
  ingress_hosts           = var.ingress_host != "" ? [var.ingress_host] : []
  ingress_tls_secret_name = var.ingress_tls_secret_name
  install_ingress_nginx   = var.install_ingress_nginx
}
