#!/usr/bin/env node
// The installed command (package.json "bin", the bundle's entry): the same entry point as main.ts.
import './main.js';
