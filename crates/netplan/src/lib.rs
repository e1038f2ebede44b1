//! Traffic-capture settings to iptables rules, as data and as iptables-restore text.
