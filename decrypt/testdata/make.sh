#!/usr/bin/env bash
# Makes the unit tests' encrypted files with the real gpg and age tools (Debian's gnupg
# and age). Test keys only; they protect nothing.
set -euo pipefail
cd "$(dirname "$0")"
home=$(mktemp -d); trap 'rm -rf "$home"' EXIT
export GNUPGHOME=$home
printf 'id,name\n1,Ana\n2,"Bo, Jr."\n' > rows.csv
key() { # uid, primary algorithm, encryption subkey algorithm, passphrase
    gpg --batch --quiet --pinentry-mode loopback --passphrase "$4" --quick-gen-key "$1" "$2" cert never
    fpr=$(gpg --list-keys --with-colons "$1" | awk -F: '/^fpr/ {print $10; exit}')
    gpg --batch --quiet --pinentry-mode loopback --passphrase "$4" --quick-add-key "$fpr" "$3" encr never
}
key 'Strata Test <rsa@strata.invalid>' rsa2048 rsa2048 ''
key 'Strata Test <cv25519@strata.invalid>' ed25519 cv25519 'key passphrase'
gpg --batch --armor --export-secret-keys rsa@strata.invalid > rsa.key.asc
gpg --batch --pinentry-mode loopback --passphrase 'key passphrase' --armor \
    --export-secret-keys cv25519@strata.invalid > cv25519.key.asc
gpg --batch --armor --export rsa@strata.invalid > rsa.pub.asc
gpg --batch --yes --trust-model always -r rsa@strata.invalid -o rows.csv.gpg --encrypt rows.csv
gpg --batch --yes --trust-model always --armor -r cv25519@strata.invalid -o rows-armored.csv.gpg --encrypt rows.csv
gpg --batch --yes --pinentry-mode loopback --passphrase 'delivery passphrase' -o rows-symmetric.csv.gpg --symmetric rows.csv
age-keygen -o age.key 2>/dev/null
age -r "$(age-keygen -y age.key)" -o rows.csv.age rows.csv
age -a -r "$(age-keygen -y age.key)" -o rows-armored.csv.age rows.csv
# age asks for a passphrase on a terminal only.
printf 'delivery passphrase\ndelivery passphrase\n' | script -qec 'age -p -o rows-passphrase.csv.age rows.csv' /dev/null >/dev/null
