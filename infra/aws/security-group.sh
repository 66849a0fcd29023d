#!/usr/bin/env bash
# Create the security group every node of infra/aws/cluster.yaml uses, and print its id.
#
#   VPC_ID=vpc-0abc... SSH_CIDR=203.0.113.0/24 infra/aws/security-group.sh
#
# Members reach each other on every port (GCS 6379, dashboard 8265, client 10001, object manager, workers);
# the only port open to the outside is SSH, and only from SSH_CIDR (a VPN or bastion range). The dashboard is
# reached through `ray dashboard`, i.e. over that SSH connection. Ray's own default group is not used because
# it opens SSH to 0.0.0.0/0.
set -euo pipefail

: "${VPC_ID:?set VPC_ID to the VPC the cluster runs in}"
: "${SSH_CIDR:?set SSH_CIDR to the range allowed to SSH to the nodes, e.g. your VPN}"
REGION="${AWS_REGION:-us-west-2}"
NAME="${SG_NAME:-embedding-refresh-ray}"

case "$SSH_CIDR" in
  0.0.0.0/0 | ::/0)
    echo "security-group.sh: refusing to open SSH to the whole internet; set SSH_CIDR to a narrow range" >&2
    exit 2
    ;;
esac

sg=$(aws ec2 create-security-group --region "$REGION" --vpc-id "$VPC_ID" --group-name "$NAME" \
  --description "Ray cluster for embedding-refresh: intra-cluster traffic and SSH from one range" \
  --query GroupId --output text)

# Everything between members of the group, nothing from anywhere else.
aws ec2 authorize-security-group-ingress --region "$REGION" --group-id "$sg" \
  --ip-permissions "IpProtocol=-1,UserIdGroupPairs=[{GroupId=$sg}]" >/dev/null
aws ec2 authorize-security-group-ingress --region "$REGION" --group-id "$sg" \
  --protocol tcp --port 22 --cidr "$SSH_CIDR" >/dev/null

echo "$sg"
